import pytest
from django.urls import reverse


@pytest.fixture
def no_docker(settings):
    """Point the Docker client at a socket where no engine listens."""
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"


@pytest.fixture
def staff_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_user("ops", password="ops password 1", is_staff=True))
    return client


@pytest.mark.django_db
def test_healthz_tells_anonymous_callers_which_parts_fail_but_no_details(client, no_docker):
    response = client.get(reverse("healthz"))
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "failing": ["docker", "runtime_image", "worker"]}


@pytest.mark.django_db
def test_healthz_503_names_engine_and_worker_when_down(staff_client, no_docker):
    client = staff_client
    response = client.get(reverse("healthz"))
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["docker"]["ok"] is False
    assert "not reachable" in body["checks"]["docker"]["detail"]
    assert body["checks"]["worker"]["ok"] is False


@pytest.mark.django_db
def test_healthz_is_public_and_not_cached(client, no_docker):
    response = client.get("/healthz")
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]
    assert client.post("/healthz").status_code == 405


@pytest.mark.docker
def test_healthz_reports_docker_api_version(docker_client, db, staff_client):
    body = staff_client.get("/healthz").json()
    assert body["checks"]["docker"]["ok"] is True
    assert "API " in body["checks"]["docker"]["detail"]
