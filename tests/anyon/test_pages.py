import pytest
from django.contrib.auth.models import User


@pytest.mark.django_db
def test_home_requires_login(client):
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.django_db
def test_login_then_logout(client, settings):
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    User.objects.create_user("ada", password="correct horse battery")
    bad = client.post("/login/", {"username": "ada", "password": "nope"})
    assert bad.status_code == 200 and b"didn't match" in bad.content
    ok = client.post("/login/", {"username": "ada", "password": "correct horse battery"})
    assert ok.status_code == 302 and ok["Location"] == "/"
    home = client.get("/")
    assert b"Welcome, ada" in home.content
    # The engine is down: every page says so, with the fix.
    assert b"Docker engine" in home.content and b"systemctl start docker" in home.content
    assert client.get("/logout/").status_code == 405  # logout is POST-only (CSRF-safe)
    client.post("/logout/")
    assert client.get("/").status_code == 302
