import pytest
from django.contrib.auth.models import User

from tests.fixtures.browser import login
from tests.fixtures.processes import ARTIFACTS


@pytest.mark.browser
def test_login_through_the_page(page, asgi_server, transactional_db):
    User.objects.create_user("grace", password="a long enough password")
    page.goto(f"{asgi_server.url}/")
    assert "/login/" in page.url
    page.fill("#id_username", "grace")
    page.fill("#id_password", "wrong")
    page.click("button[type=submit]")
    assert page.get_by_role("alert").first.inner_text().startswith("Your username and password didn't match")
    login(page, asgi_server.url, "grace", "a long enough password")
    assert page.get_by_test_id("landing-title").inner_text() == "Welcome, grace"
    assert page.get_by_test_id("current-user").inner_text() == "grace"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "landing.png"), full_page=True)
    assert (ARTIFACTS / "landing.png").stat().st_size > 1000
