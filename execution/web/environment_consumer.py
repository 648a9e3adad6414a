"""The environment page's live sections over a websocket: observe mode's proposed setup policy, the repository's
recent runs with their setup state, and the environment's snapshots, each pushed as the server renders it whenever
it changes. Only the signed-in user's own rows are ever read (another user's, staff's included, are not found). The
page's forms are never sent: what the user types stays. A wake-up comes when an attempt, a run, a snapshot or the
environment is stored; a short poll covers one that never came."""

from __future__ import annotations

from http.cookies import SimpleCookie

from channels.db import database_sync_to_async
from django.conf import settings
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from execution.environments import proposals, selectors
from execution.environments.forms import RepositoryForm
from execution.live import environments_group
from execution.models import Environment
from execution.snapshots import selectors as snapshot_selectors
from shared.live.consumer import JsonConsumer

#: The sections, in the order of the first sync, with their templates.
SECTIONS = {
    "proposal": "execution/_proposal.html",
    "runs": "execution/_environment_runs.html",
    "snapshots": "execution/_environment_snapshots.html",
}


class EnvironmentPageConsumer(JsonConsumer):
    """server → client: ``proposal {html}``, ``runs {html}``, ``snapshots {html}``: all three once at connect,
    then each one again when its rendering changed."""

    max_frame = 4096  # the page only listens
    POLL_SECONDS = 3.0

    async def connect(self) -> None:
        self.user = self.scope.get("user")
        if self.user is None or not self.user.is_authenticated:
            await self.close(code=4401)
            return
        kwargs = self.scope["url_route"]["kwargs"]
        form = RepositoryForm({"repository": f"{kwargs['owner']}/{kwargs['name']}"})
        if not form.is_valid():
            await self.close(code=4404)
            return
        self.repository = form.cleaned_data["repository"]
        await self.accept_and_follow(environments_group(self.user.pk), self.watch)

    async def environment_changed(self, event: dict) -> None:
        self.woken()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if await self.parse(text_data, bytes_data) is not None:
            await self.send_error("this socket only sends")

    def _csrf_token(self) -> str:
        """The page's own CSRF cookie, so the forms inside a section (accept, drop) still post."""
        cookies = SimpleCookie()
        for name, value in self.scope.get("headers", []):
            if name == b"cookie":
                cookies.load(value.decode("latin-1"))
        csrf = cookies.get(settings.CSRF_COOKIE_NAME)
        return csrf.value if csrf else ""

    def _sections(self) -> dict[str, str]:
        user, repository = self.user, self.repository
        proposal = proposals.latest_setup_proposal(user=user, repository=repository)
        try:
            environment = selectors.environment_for(user=user, repository=repository)
        except Environment.DoesNotExist:
            environment = None
        owner, name = repository.split("/")
        context = {
            "proposal": proposal,
            "proposal_diff": proposals.diff(proposal, environment) if proposal else [],
            "owner_name": [owner, name],
            "csrf_token": self._csrf_token(),
            "environment": environment,
            "recent_runs": selectors.recent_runs(user=user, repository=repository),
            "snapshots": snapshot_selectors.environment_snapshots(environment=environment) if environment else [],
            "now": timezone.now(),
            "next": reverse("environment-detail", args=[owner, name]),
        }
        return {section: render_to_string(template, context) for section, template in SECTIONS.items()}

    async def watch(self) -> None:
        sent: dict[str, str] = {}
        while True:
            for section, html in (await database_sync_to_async(self._sections)()).items():
                if sent.get(section) != html:  # the first time: whatever changed since the page was rendered
                    sent[section] = html
                    await self.send_json({"type": section, "html": html})
            await self.wait_for_wakeup(self.POLL_SECONDS)
