"""``{% environment_link task %}``: the link to the page of the environment of a task's repository."""

from __future__ import annotations

from django import template
from django.urls import reverse
from django.utils.html import format_html

from execution.environments.selectors import repository_of

register = template.Library()


@register.simple_tag
def environment_link(task) -> str:
    repository = repository_of(task.repo_url)
    owner, name = repository.split("/")
    url = reverse("environment-detail", kwargs={"owner": owner, "name": name})
    return format_html('<a href="{}" data-testid="environment-link">Environment for {}</a>', url, repository)
