"""Alerts: recorded, deduplicated within the window, delivered to Slack (a real HTTP server on 127.0.0.1) and
e-mail (Django's outbox), scrubbed of secrets; a failing channel is recorded and never breaks the caller."""

import pytest
from django.core import mail

from shared.alerts import AlertKind, do_raise_alert
from shared.models import Alert
from shared.notifiers import before_send
from tests.fakes.github import classic_token


def test_delivered_scrubbed_and_deduplicated(transactional_db, slack):
    token = classic_token()
    alert = do_raise_alert(kind=AlertKind.EXEC_NONZERO_EXIT, message=f"step failed near {token}", dedupe_key="f1")
    assert alert.delivery["slack"]["status"] == "sent" and alert.delivery["email"]["status"] == "sent"
    [text] = slack.texts()
    assert "exec_nonzero_exit" in text and "***" in text and token not in text
    [message] = mail.outbox
    assert message.to == ["ops@example.com"] and token not in message.body and "***" in message.body
    again = do_raise_alert(kind=AlertKind.EXEC_NONZERO_EXIT, message="again", dedupe_key="f1")
    assert again.pk == alert.pk and again.count == 2
    assert len(slack.texts()) == 1 and len(mail.outbox) == 1  # counted, not notified again
    assert Alert.objects.count() == 1


def test_failing_channel_is_recorded_not_raised(transactional_db, slack, settings):
    slack.status = 500
    settings.ANYON_SLACK_WEBHOOK_URL = slack.webhook_url
    alert = do_raise_alert(kind=AlertKind.DOCKER_UNREACHABLE, message="engine down")
    assert alert.delivery["slack"]["status"] == "failed" and "500" in alert.delivery["slack"]["error"]
    assert alert.delivery["email"]["status"] == "sent"
    settings.ANYON_SLACK_WEBHOOK_URL = "http://127.0.0.1:9/hook"  # nothing listens
    other = do_raise_alert(kind=AlertKind.DOCKER_UNREACHABLE, message="engine down", dedupe_key="other")
    assert other.delivery["slack"]["status"] == "failed"
    assert Alert.objects.get(pk=other.pk).delivery["slack"]["status"] == "failed"


def test_sentry_events_are_scrubbed():
    token = classic_token()
    event = {
        "message": f"boom {token}",
        "exception": {"values": [{"value": f"bad token sk-ant-api03-{'z' * 30}", "stacktrace": {"frames": []}}]},
        "extra": {"nested": [f"x-access-token:{token}@github.com"]},
        "level": 40,
    }
    scrubbed = before_send(event, {})
    flat = repr(scrubbed)
    assert token not in flat and "sk-ant-api03-zzz" not in flat and scrubbed["level"] == 40


def test_sentry_receives_scrubbed_events(transactional_db, settings):
    """A real sentry_sdk client sends to a fake Sentry ingest endpoint on 127.0.0.1; the event is scrubbed."""
    import gzip

    import sentry_sdk

    from shared.notifiers import before_send
    from tests.fakes.http_server import FakeHTTPServer, Reply

    class FakeSentry(FakeHTTPServer):
        def handle(self, request):
            return Reply(200, {"id": "0" * 32})

    token = classic_token()
    with FakeSentry() as sentry:
        dsn = f"http://publickey@{sentry.url.removeprefix('http://')}/1"
        settings.SENTRY_DSN = dsn
        sentry_sdk.init(dsn=dsn, before_send=before_send, default_integrations=False)
        try:
            alert = do_raise_alert(kind=AlertKind.CLAUDE_CLI_ERROR, message=f"boom near {token}", dedupe_key="s1")
            sentry_sdk.flush(timeout=5)
        finally:
            sentry_sdk.init(dsn=None)
        assert alert.delivery["sentry"]["status"] == "sent"
        bodies = []
        for request in sentry.requests:
            body = request.body
            if request.headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            bodies.append(body.decode(errors="replace"))
        joined = "\n".join(bodies)
        assert "claude_cli_error" in joined and token not in joined and "***" in joined


def test_an_alert_raised_in_a_transaction_that_rolls_back_is_neither_kept_nor_delivered(transactional_db, slack):
    from django.db import transaction

    with pytest.raises(RuntimeError), transaction.atomic():
        do_raise_alert(kind=AlertKind.DOCKER_UNREACHABLE, message="engine down")
        raise RuntimeError("the caller's transaction fails")
    assert not Alert.objects.exists() and slack.texts() == [] and mail.outbox == []


RACE = """
import threading
from django.db import connection
from shared.alerts import do_raise_alert
from shared.models import Alert

Alert.objects.filter(dedupe_key="race").delete()
start = threading.Barrier(8)

def raise_some():
    start.wait()
    for _ in range(10):
        do_raise_alert(kind="docker_host_lost", message="host b went away", dedupe_key="race")
    connection.close()

threads = [threading.Thread(target=raise_some) for _ in range(8)]
for t in threads: t.start()
for t in threads: t.join()
print("ROWS", list(Alert.objects.filter(dedupe_key="race").values_list("count", flat=True)))
"""


def test_processes_raising_one_alert_at_once_count_up_one_alert_on_postgresql(postgres_url, tmp_path):
    """Eight writers at once (threads with their own connections, as processes would be) on PostgreSQL, where
    read committed lets two of them both see "no recent alert" without the advisory lock."""
    import subprocess
    import sys

    from tests.fixtures.processes import ROOT, subprocess_env

    env = subprocess_env(DATABASE_URL=postgres_url, ANYON_TEMP_DIR=str(tmp_path))
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", RACE], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert "ROWS [80]" in done.stdout, done.stdout + done.stderr


def test_the_delivery_is_recorded_by_an_action_and_notifying_writes_nothing(transactional_db, slack):
    """``notify`` only delivers and says how it went; ``do_mark_alert_notified`` is the write."""
    from shared import alerts
    from shared.notifiers import notify

    alert = Alert.objects.create(kind=AlertKind.ORPHAN_REMOVED, message="by hand", dedupe_key="by-hand")
    delivery = notify(alert)
    assert delivery["slack"]["status"] == "sent" and delivery["email"]["status"] == "sent"
    assert Alert.objects.get(pk=alert.pk).delivery == {} and alert.delivery == {}
    alerts.do_mark_alert_notified(alert=alert, delivery=delivery)
    assert Alert.objects.get(pk=alert.pk).delivery == delivery == alert.delivery


def test_an_alert_whose_delivery_cannot_be_recorded_still_reaches_the_caller(transactional_db, slack, monkeypatch):
    from shared import alerts

    def broken(**kwargs):
        raise RuntimeError("database gone")

    monkeypatch.setattr(alerts, "do_mark_alert_notified", broken)
    alert = do_raise_alert(kind=AlertKind.DOCKER_UNREACHABLE, message="engine down", dedupe_key="unrecorded")
    assert alert is not None and len(slack.texts()) == 1
    assert Alert.objects.get(pk=alert.pk).delivery == {}
