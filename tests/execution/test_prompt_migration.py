"""Migration 0008: prompts stored before ``PromptField`` that hold its escape character still read back exactly."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from execution.prompts import ESC

BEFORE = [("execution", "0007_prompt_1mb")]


@pytest.mark.django_db(transaction=True)
def test_old_prompts_with_the_escape_character_read_back_exactly():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    user = old.get_model("auth", "User").objects.create(username="old")
    written = f"{ESC}0 and {ESC}{ESC} and {ESC}x, written before the escape existed"
    task = old.get_model("execution", "Task").objects.create(owner_id=user.pk, title="t", repo_url="u", prompt=written)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())  # 0008 among them

    from execution.models import Task

    assert Task.objects.get(pk=task.pk).prompt == written


@pytest.mark.django_db(transaction=True)
def test_going_back_leaves_plain_text():
    """Rolled back, the columns are plain text again: escapes undone, a NUL shown as ␀ (PostgreSQL cannot hold it)."""
    from django.contrib.auth.models import User

    from execution.models import Task

    owner = User.objects.create(username="new")
    task = Task.objects.create(owner=owner, title="t", repo_url="u", prompt=f"fix\x00it {ESC}")
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    assert old.get_model("execution", "Task").objects.get(pk=task.pk).prompt == f"fix\u2400it {ESC}"
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
