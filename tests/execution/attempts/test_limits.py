# Long because each limit is attacked in its own test, all on one shared world of fixtures.
"""Per-user limits of the runs (docs/DEPLOYMENT.md, "Limits"): each is attacked, and nothing is lost and nothing
else stops. Runs go through the real queue entry point and session against the in-process engine fake."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from execution.attempts.actions import do_cancel_attempt, do_create_task, do_start_attempt
from execution.logs.writer import LogWriter
from execution.models import ACTIVE_STATUSES, Attempt, AttemptStatus, LogRecord, Run, RunStatus
from execution.runner import run_attempt
from secrets_app.secret_store import do_store_secret
from tests.execution.conftest import logs, oauth_token
from tests.fakes.docker_engine import FakeEngine, ScriptedExec

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.hostile]


def step(*argv: str) -> dict:
    return {"kind": "custom", "title": "step", "argv": list(argv)}


class Queue:
    """django-q2's queue, recorded: ``async_task`` calls in order; ``work()`` runs them first in, first out, as
    one worker would."""

    def __init__(self) -> None:
        self.tasks: list[int] = []

    def async_task(self, func: str, attempt_id: int, **options) -> None:
        assert func == "execution.runner.run_attempt"
        self.tasks.append(attempt_id)

    def work(self) -> list[int]:
        ran = []
        while self.tasks:
            attempt_id = self.tasks.pop(0)
            run_attempt(attempt_id)
            ran.append(attempt_id)
        return ran


@pytest.fixture
def engine(monkeypatch, settings, tmp_path) -> FakeEngine:
    settings.ANYON_TEMP_DIR = tmp_path / "anyon-tmp"
    fake = FakeEngine()
    monkeypatch.setattr("execution.runner.session.DockerEngine", lambda: fake)
    return fake


@pytest.fixture
def queue(monkeypatch) -> Queue:
    recorded = Queue()
    monkeypatch.setattr("django_q.tasks.async_task", recorded.async_task)
    return recorded


def user_with_claude(name: str) -> User:
    user = User.objects.create_user(name, password=f"{name} password 123")
    do_store_secret(owner=user, provider="claude", kind="oauth_token", value=oauth_token())
    return user


def start(user, argv: list[str]) -> Attempt:
    task = do_create_task(
        owner=user, title="t", repo_url="https://github.com/octo/repo.git", base_branch="main", prompt="p"
    )
    return do_start_attempt(task=task, plan=[step(*argv)])


def holding(user) -> int:
    """The user's attempts that hold a queue task or a worker."""
    return Attempt.objects.filter(task__owner=user, status__in=ACTIVE_STATUSES, waiting_for_slot=False).count()


# --- concurrent attempts per user ---------------------------------------------------------------------------------


def test_a_flood_of_attempts_waits_in_order_without_queue_tasks_and_all_of_them_run(engine, queue, settings):
    settings.ANYON_MAX_ACTIVE_ATTEMPTS_PER_USER = 2
    mallory, bob = user_with_claude("mallory"), user_with_claude("bob")
    seen_holding = []

    def script(argv):
        if "echo" not in argv:
            return None  # the session's own probes (git, history scrub)
        seen_holding.append(holding(mallory))
        return ScriptedExec([("stdout", f"ran {argv[-1]}\n".encode())])

    engine.script = script
    flood = [start(mallory, ["echo", f"m{i}"]) for i in range(12)]

    # Two hold a queue task; the ten others wait, queued, with none (no worker slot is held for them).
    assert queue.tasks == [flood[0].pk, flood[1].pk]
    assert [a.waiting_for_slot for a in flood] == [False, False] + [True] * 10
    assert all(a.status == AttemptStatus.QUEUED for a in flood)

    # The page of a waiting attempt says so, and how many go first.
    client = Client()
    client.force_login(mallory)
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    html = client.get(f"/attempts/{flood[5].pk}/").content.decode()
    assert "Queued behind your other attempts (5 ahead of it; at most 2 of yours run at once)" in html
    assert 'data-testid="attempt-waiting" hidden' in client.get(f"/attempts/{flood[0].pk}/").content.decode()

    # Another user is not held up by the flood: bob's attempt gets its queue task at once.
    bobs = start(bob, ["echo", "bob"])
    assert not bobs.waiting_for_slot and queue.tasks[-1] == bobs.pk

    # A waiting attempt can be cancelled; the rest keep their order.
    do_cancel_attempt(attempt=flood[7], by="mallory")

    ran = queue.work()
    expected = [a.pk for a in flood if a.pk != flood[7].pk]
    assert [pk for pk in ran if pk != bobs.pk] == expected  # every one of them ran, in the order they were made
    assert bobs.pk in ran[:4]  # bob's ran among the first, not after the flood
    assert max(seen_holding) <= 2
    for attempt in Attempt.objects.filter(pk__in=[*expected, bobs.pk]):
        assert attempt.status == AttemptStatus.SUCCEEDED, attempt
        assert not attempt.waiting_for_slot
    assert Attempt.objects.get(pk=flood[7].pk).status == AttemptStatus.CANCELLED
    steps = [argv for argv in engine.execs if argv[:2] == ["anyon-exec", "echo"]]
    assert steps == [["anyon-exec", "echo", name] for name in _ran_argv(ran, flood, bobs)]


def _ran_argv(ran: list[int], flood: list[Attempt], bobs: Attempt) -> list[str]:
    names = {a.pk: f"m{i}" for i, a in enumerate(flood)} | {bobs.pk: "bob"}
    return [names[pk] for pk in ran]


def test_a_failed_or_stale_attempt_frees_its_slot_too(engine, queue, settings):
    settings.ANYON_MAX_ACTIVE_ATTEMPTS_PER_USER = 1
    mallory = user_with_claude("mallory")
    engine.script = lambda argv: ScriptedExec([("stdout", b"no\n")], exit_code=3) if "false" in argv else None
    first, second = start(mallory, ["false"]), start(mallory, ["false"])
    assert queue.tasks == [first.pk] and second.waiting_for_slot
    assert queue.work() == [first.pk, second.pk]
    assert set(Attempt.objects.values_list("status", flat=True)) == {AttemptStatus.FAILED}


def test_no_limit_when_set_to_zero(engine, queue, settings):
    settings.ANYON_MAX_ACTIVE_ATTEMPTS_PER_USER = 0
    mallory = user_with_claude("mallory")
    attempts = [start(mallory, ["true"]) for _ in range(5)]
    assert queue.tasks == [a.pk for a in attempts]


# --- log volume per attempt ---------------------------------------------------------------------------------------


def test_a_run_printing_past_the_cap_goes_on_the_log_says_where_it_was_cut_and_the_total_is_kept(
    engine, queue, settings
):
    settings.ANYON_ATTEMPT_LOG_MAX_CHARS = 20_000
    mallory, bob = user_with_claude("mallory"), user_with_claude("bob")
    line = b"x" * 999 + b"\n"

    def script(argv):
        if argv[-1] == "flood":
            return ScriptedExec([("stdout", line)] * 1000)  # 1 MB, fifty times the cap
        if argv[-1] not in ("after", "quiet"):
            return None
        return ScriptedExec([("stdout", f"{argv[-1]} still runs\n".encode())])

    engine.script = script
    task = do_create_task(
        owner=mallory, title="t", repo_url="https://github.com/o/r.git", base_branch="main", prompt="p"
    )
    flooding = do_start_attempt(task=task, plan=[step("flood"), step("after")])
    quiet = start(bob, ["quiet"])
    queue.work()

    flooding.refresh_from_db()
    assert flooding.status == AttemptStatus.SUCCEEDED  # the run went on past the cap
    assert list(Run.objects.filter(attempt=flooding).values_list("status", flat=True)) == [RunStatus.SUCCEEDED] * 2
    stored = logs(flooding, "stdout")
    assert (
        len(stored) <= 20_000
        and stored == ("x" * 999 + "\n") * (len(stored) // 1000) + stored[-(len(stored) % 1000) or len(stored) :]
    )
    assert "after still runs" not in stored  # counted, not stored
    system = logs(flooding, "system")
    assert "--- output cut here: the log of an attempt keeps at most 20,000 characters." in system
    assert "$ after" in system and "Attempt succeeded" in system  # Anyon's own lines are always stored
    assert flooding.log_chars >= 1000 * 1000 + len("after still runs\n")
    cut = LogRecord.objects.get(attempt=flooding, seq=flooding.log_cut_at_seq)
    assert "output cut here" in cut.text
    assert "characters of output were not stored" in system

    client = Client()
    client.force_login(mallory)
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    html = client.get(f"/attempts/{flooding.pk}/").content.decode()
    assert f"This attempt printed {flooding.log_chars:,} characters of output" in html

    # Another user's attempt at the same time keeps its whole log.
    assert logs(quiet, "stdout") == "quiet still runs\n"
    quiet.refresh_from_db()
    assert quiet.log_cut_at_seq is None


def test_the_cap_covers_the_attempts_later_sessions_too():
    from tests.execution.conftest import make_attempt

    attempt = make_attempt()
    first = LogWriter(attempt.pk, max_chars=100)
    first.write(None, "stdout", "a" * 80)
    first.close()
    second = LogWriter(attempt.pk, max_chars=100)  # a follow-up's session
    second.write(None, "stdout", "b" * 50)
    second.write(None, "stderr", "c" * 30)
    second.write(None, "system", "Follow-up succeeded\n")
    second.close()
    attempt.refresh_from_db()
    assert logs(attempt, "stdout") == "a" * 80 + "b" * 20 and logs(attempt, "stderr") == ""
    assert "Follow-up succeeded" in logs(attempt, "system")
    assert "60 characters of output were not stored" in logs(attempt, "system")


def test_anyons_own_lines_past_the_cap_are_bounded_too():
    """Refused connections are logged as system lines one by one: a run making millions of them is bounded too."""
    from execution.logs.writer import SYSTEM_CHARS_AFTER_CUT
    from tests.execution.conftest import make_attempt

    attempt = make_attempt()
    writer = LogWriter(attempt.pk, max_chars=1000)
    writer.write(None, "stdout", "o" * 2000)
    line = "blocked: 10.0.0.1:443 is not on the allowlist\n"
    for _ in range(3 * SYSTEM_CHARS_AFTER_CUT // len(line)):
        writer.write(None, "system", line)
    writer.close()
    system = logs(attempt, "system")
    assert SYSTEM_CHARS_AFTER_CUT - len(line) <= system.count("blocked:") * len(line) <= SYSTEM_CHARS_AFTER_CUT
    assert "characters of output were not stored" in system.splitlines()[-1]
    attempt.refresh_from_db()
    assert attempt.log_chars >= 2000 + 3 * SYSTEM_CHARS_AFTER_CUT - len(line)
    assert attempt.log_chars >= 80 + 50 + 30 and attempt.log_cut_at_seq is not None


# --- workspace size -----------------------------------------------------------------------------------------------


def test_the_sweep_removes_idle_and_too_large_workspaces_and_leaves_working_and_small_ones(settings):
    """ANYON_ATTEMPT_IDLE_TTL and ANYON_WORKSPACE_MAX_BYTES: a finished attempt's workspace that is idle, or (with the
    cap set) larger than the cap, is removed and the attempt says why; a running attempt's workspace, however large,
    and small recent ones (another user's too) stay."""
    from datetime import timedelta

    from django.utils import timezone

    from execution.attempts.containers import home_volume
    from execution.sweeps.cleanup import sweep_idle_workspaces
    from tests.execution.conftest import make_attempt

    settings.ANYON_ATTEMPT_IDLE_TTL = 3600
    engine = FakeEngine()
    attempts = {}
    for name, status, age, size in (
        ("idle", AttemptStatus.SUCCEEDED, 7200, 10),
        ("large", AttemptStatus.SUCCEEDED, 0, 3 * 1024**3),
        ("small", AttemptStatus.FAILED, 0, 10 * 1024**2),
        ("running", AttemptStatus.RUNNING, 0, 5 * 1024**3),
        ("bobs", AttemptStatus.SUCCEEDED, 0, 10),
    ):
        attempt = make_attempt(f"user-{name}")
        volume = f"ws-{name}"
        Attempt.objects.filter(pk=attempt.pk).update(
            status=status, workspace_volume=volume, last_activity_at=timezone.now() - timedelta(seconds=age)
        )
        engine.volumes |= {volume, home_volume(volume)}
        engine.sizes[volume] = size
        attempts[name] = attempt

    settings.ANYON_WORKSPACE_MAX_BYTES = 0  # no size cap: only the idle one goes
    assert sweep_idle_workspaces(engine=engine).removed == ["ws-idle"]

    settings.ANYON_WORKSPACE_MAX_BYTES = 1024**3
    assert sweep_idle_workspaces(engine=engine).removed == ["ws-large"]
    assert engine.volumes == {v for n in ("small", "running", "bobs") for v in (f"ws-{n}", home_volume(f"ws-{n}"))}
    large = Attempt.objects.get(pk=attempts["large"].pk)
    assert large.workspace_volume == "" and large.status == AttemptStatus.SUCCEEDED  # its logs and diff stay
    assert "removed by the cleanup sweep: 3,221,225,472 bytes, more than ANYON_WORKSPACE_MAX_BYTES" in logs(large)
    assert Attempt.objects.get(pk=attempts["running"].pk).workspace_volume == "ws-running"


def test_a_workspace_goes_once_its_idle_time_passes_on_the_clock_the_sweep_runs_under(settings):
    """ANYON_ATTEMPT_IDLE_TTL counts from the last activity on the wall clock: a day on (over a month end and
    midnight UTC) the workspace goes, a second before the TTL it stays."""
    from datetime import UTC, datetime

    import time_machine
    from django.utils import timezone

    from execution.attempts.containers import home_volume
    from execution.sweeps.cleanup import sweep_idle_workspaces
    from tests.execution.conftest import make_attempt

    settings.ANYON_ATTEMPT_IDLE_TTL = 86400
    settings.ANYON_WORKSPACE_MAX_BYTES = 0
    engine = FakeEngine()
    with time_machine.travel(datetime(2027, 4, 30, 12, 0, tzinfo=UTC), tick=False) as clock:
        attempt = make_attempt("idle-clock")
        Attempt.objects.filter(pk=attempt.pk).update(
            status=AttemptStatus.SUCCEEDED, workspace_volume="ws-clock", last_activity_at=timezone.now()
        )
        engine.volumes |= {"ws-clock", home_volume("ws-clock")}
        clock.move_to(datetime(2027, 5, 1, 11, 59, 59, tzinfo=UTC))
        assert sweep_idle_workspaces(engine=engine).removed == []
        clock.move_to(datetime(2027, 5, 1, 12, 0, 1, tzinfo=UTC))
        assert sweep_idle_workspaces(engine=engine).removed == ["ws-clock"]
