import os

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from secrets_app.key_rotation import cipher_for, encrypted_columns, use_secret_key
from secrets_app.models import Secret
from secrets_app.secret_store import do_store_secret, fetch_secret
from tests.fakes.github import classic_token

NEW_KEY = "new-rotated-key-" + "n" * 40


@pytest.fixture(autouse=True)
def this_process_keeps_its_key():
    """The command moves this process to the new key (its fields' ciphers); the next test needs the suite's."""
    yield
    use_secret_key(os.environ["ANYON_SECRET_KEY"])


def test_every_encrypted_column_is_found():
    found = {(m.__name__, f.name) for m, f in encrypted_columns()}
    assert {("Secret", "value"), ("GitHubDeviceFlow", "device_code")} <= found


@pytest.mark.django_db
def test_rotation_reencrypts_everything_and_reports_unreadable(alice, settings, monkeypatch, capsys):
    values = [classic_token() for _ in range(3)]
    for kind, value in zip(["pat", "oauth_token"], values, strict=False):
        do_store_secret(owner=alice, provider="github", kind=kind, value=value)
    do_store_secret(owner=alice, provider="claude", kind="api_key", value="sk-ant-api03-" + "r" * 30)
    broken = Secret.objects.create(owner=alice, provider="claude", kind="oauth_token", value="x", fingerprint="")
    old_key = settings.SECRET_KEY
    # The rows are under the old key; an unreadable row (written under some third key) must survive untouched.
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE secrets_app_secret SET value = %s WHERE id = %s",
            [cipher_for("some-other-key-" + "z" * 40).encrypt(b"lost"), broken.pk],
        )
        cursor.execute("SELECT value FROM secrets_app_secret WHERE id = %s", [broken.pk])
        broken_before = bytes(cursor.fetchone()[0])

    monkeypatch.setenv("ANYON_OLD_SECRET_KEY", old_key)
    settings.SECRET_KEY = NEW_KEY
    with pytest.raises(CommandError, match="1 value"):
        call_command("rotate_secret_key", allow_sqlite=True)
    out = capsys.readouterr()
    assert "re-encrypted 4 value(s)" in out.out  # the three credentials and the store's key canary
    assert f"secrets_app.Secret#{broken.pk}.value" in out.err

    new = cipher_for(NEW_KEY)
    with connection.cursor() as cursor:
        cursor.execute("SELECT id, value FROM secrets_app_secret ORDER BY id")
        rows = dict(cursor.fetchall())
    assert bytes(rows.pop(broken.pk)) == broken_before  # left exactly as it was
    import pickle

    assert sorted(pickle.loads(new.decrypt(bytes(raw))) for raw in rows.values()) == sorted(
        [*values[:2], "sk-ant-api03-" + "r" * 30]
    )
    # Running again is harmless: everything is already on the new key.
    with pytest.raises(CommandError):
        call_command("rotate_secret_key", allow_sqlite=True)
    assert "re-encrypted 0 value(s); 4 already on the new key" in capsys.readouterr().out


def test_rotation_refuses_same_key_and_missing_old_key(settings, monkeypatch, db):
    monkeypatch.delenv("ANYON_OLD_SECRET_KEY", raising=False)
    with pytest.raises(CommandError, match="ANYON_OLD_SECRET_KEY"):
        call_command("rotate_secret_key", allow_sqlite=True)
    monkeypatch.setenv("ANYON_OLD_SECRET_KEY", settings.SECRET_KEY)
    with pytest.raises(CommandError, match="equals the current"):
        call_command("rotate_secret_key", allow_sqlite=True)


def test_rotated_secrets_decrypt_through_the_model_in_a_new_process(alice, tmp_path, transactional_db):
    """End to end: rotate in the DB, then a fresh process started with the new key reads the secret."""
    import subprocess
    import sys

    from tests.fixtures.processes import ROOT, subprocess_env

    value = classic_token()
    do_store_secret(owner=alice, provider="github", kind="pat", value=value)
    env = subprocess_env(ANYON_SECRET_KEY=NEW_KEY, ANYON_OLD_SECRET_KEY=os.environ["ANYON_SECRET_KEY"])
    done = subprocess.run(
        [sys.executable, "manage.py", "rotate_secret_key"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    script = (
        "import django; django.setup();"
        "from django.contrib.auth.models import User; from secrets_app.secret_store import fetch_secret;"
        "print(fetch_secret(owner=User.objects.get(username='alice'), provider='github', purpose='t', actor='t').value)"
    )
    read = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert read.returncode == 0, read.stderr
    assert read.stdout.strip() == value
    # and the test process, still on the old key, can no longer read it: the key really changed
    from secrets_app.errors import SecretUndecryptable

    with pytest.raises(SecretUndecryptable):
        fetch_secret(owner=alice, provider="github", purpose="t", actor="t")
