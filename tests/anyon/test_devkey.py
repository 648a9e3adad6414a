import stat

import pytest
from django.core.exceptions import ImproperlyConfigured

from anyon.devkey import resolve_secret_key


def test_key_required_without_debug(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="ANYON_SECRET_KEY is not set"):
        resolve_secret_key("", debug=False, dev_key_file=tmp_path / "k")


def test_short_key_rejected(tmp_path):
    with pytest.raises(ImproperlyConfigured, match="too short"):
        resolve_secret_key("short", debug=False, dev_key_file=tmp_path / "k")


def test_env_key_wins(tmp_path):
    key = "e" * 40
    assert resolve_secret_key(key, debug=True, dev_key_file=tmp_path / "k") == (key, "env")
    assert not (tmp_path / "k").exists()


def test_dev_key_generated_once_private_and_announced(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ANYON_QUIET_DEV_KEY", raising=False)
    path = tmp_path / "nested" / "dev-secret-key"
    key, source = resolve_secret_key("", debug=True, dev_key_file=path)
    assert source == "dev-file" and len(key) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "GENERATED A DEVELOPMENT SECRET KEY" in capsys.readouterr().err
    again, _ = resolve_secret_key("", debug=True, dev_key_file=path)
    assert again == key
