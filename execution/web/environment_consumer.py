"""The environment page's live proposal card over a websocket: observe mode's latest proposed setup policy of the
user's own environment of one repository, pushed as the server renders it whenever it changes. A wake-up comes when
an attempt's setup record or the environment is stored; a short poll covers one that never came."""

from __future__ import annotations

from http.cookies import SimpleCookie

from channels.db import database_sync_to_async
from django.conf import settings
from django.template.loader import render_to_string

from execution.environments import proposals, selectors
from execution.environments.actions import environments_group
from execution.environments.forms import RepositoryForm
from execution.models import Environment
from shared.live.consumer import JsonConsumer


class EnvironmentProposalConsumer(JsonConsumer):
    """server → client: ``proposal {html}``. Only the signed-in user's own proposal is ever read."""

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

    def _card(self) -> tuple[tuple, str]:
        proposal = proposals.latest_setup_proposal(user=self.user, repository=self.repository)
        try:
            environment = selectors.environment_for(user=self.user, repository=self.repository)
        except Environment.DoesNotExist:
            environment = None
        cookies = SimpleCookie()
        for name, value in self.scope.get("headers", []):
            if name == b"cookie":
                cookies.load(value.decode("latin-1"))
        csrf = cookies.get(settings.CSRF_COOKIE_NAME)
        context = {
            "proposal": proposal,
            "proposal_diff": proposals.diff(proposal, environment) if proposal else [],
            "owner_name": self.repository.split("/"),
            "csrf_token": csrf.value if csrf else "",
        }
        version = (proposal.attempt.pk if proposal else None, environment.updated_at if environment else None)
        return version, render_to_string("execution/_proposal.html", context)

    async def watch(self) -> None:
        version, html = await database_sync_to_async(self._card)()
        await self.send_json({"type": "proposal", "html": html})  # whatever changed since the page was rendered
        while True:
            await self.wait_for_wakeup(self.POLL_SECONDS)
            current, html = await database_sync_to_async(self._card)()
            if current != version:
                version = current
                await self.send_json({"type": "proposal", "html": html})
