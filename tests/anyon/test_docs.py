# Long because every document that can rot has its own small check here.
"""Documentation that can rot is checked against the code."""

import re
from pathlib import Path

import pytest

from tests.fixtures.queueing import held_from_workers

ROOT = Path(__file__).resolve().parents[2]
CODE_DIRS = ["anyon", "secrets_app", "execution"]
ENV_READ = re.compile(
    r"""(?:env(?:\.(?:str|bool|int|float|list|db_url|email_url|json))?\(\s*|os\.environ\.get\(\s*|os\.environ\[\s*)"""
    r"""["']([A-Z][A-Z0-9_]+)["']"""
)


def settings_read_by_code() -> set[str]:
    names: set[str] = set()
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*.py"):
            names.update(ENV_READ.findall(path.read_text()))
    return names - {"DJANGO_SETTINGS_MODULE", "ANYON_QUIET_DEV_KEY"}


def test_the_scanner_finds_settings():
    found = settings_read_by_code()
    assert {"ANYON_SECRET_KEY", "DATABASE_URL", "ANYON_TEMP_DIR", "ANYON_ADMIN_PASSWORD"} <= found


def test_every_setting_is_in_the_deployment_table():
    table = (ROOT / "docs" / "DEPLOYMENT.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z][A-Z0-9_]+)` \|", table, re.MULTILINE))
    missing = settings_read_by_code() - documented
    assert not missing, f"settings read by the code but not documented in docs/DEPLOYMENT.md: {sorted(missing)}"


def test_every_management_command_is_in_the_runbook():
    runbook = (ROOT / "docs" / "RUNBOOK.md").read_text()
    commands = {
        path.stem
        for folder in CODE_DIRS
        for path in (ROOT / folder).glob("management/commands/*.py")
        if path.stem != "__init__"
    }
    assert commands, "no management commands found: the scan is broken"
    missing = {name for name in commands if f"manage.py {name}" not in runbook}
    assert not missing, f"management commands missing from docs/RUNBOOK.md: {sorted(missing)}"


def test_every_alert_kind_is_in_the_runbook():
    from shared.alerts import AlertKind

    runbook = (ROOT / "docs" / "RUNBOOK.md").read_text()
    kinds = AlertKind.all()
    assert len(kinds) >= 10
    missing = [kind for kind in kinds if f"`{kind}`" not in runbook]
    assert not missing, f"alert kinds missing from docs/RUNBOOK.md: {missing}"


def test_screenshots_exist_and_show_the_current_ui():
    from tests.live_stack import ui_source_hash

    referenced = set()
    for doc in ("USER_GUIDE.md", "RUNBOOK.md"):
        referenced.update(re.findall(r"\]\((screenshots/[\w.-]+\.png)\)", (ROOT / "docs" / doc).read_text()))
    assert len(referenced) >= 10
    missing = [name for name in referenced if not (ROOT / "docs" / name).exists()]
    assert not missing, f"run make screenshots: missing {missing}"
    recorded = (ROOT / "docs" / "screenshots" / "SOURCE.sha256").read_text().strip()
    assert recorded == ui_source_hash(), "what the pages are made of changed since the screenshots: make screenshots"


def test_the_screenshot_hash_covers_the_python_that_renders_the_pages():
    from tests.live_stack import ui_source_files

    covered = {str(path.relative_to(ROOT)) for path in ui_source_files()}
    for name in (
        "templates/base.html", "static/anyon.css", "anyon/views.py", "anyon/admin.py", "anyon/context_processors.py",
        "anyon/templatetags/ops_dashboard.py", "execution/web/views.py", "execution/admin.py", "execution/web/forms.py",
        "execution/models.py", "execution/logs/claude_events.py", "execution/templatetags/diff_tags.py",
        "secrets_app/views.py", "secrets_app/forms.py", "secrets_app/models.py", "secrets_app/admin.py",
        "shared/admin.py", "shared/models.py", "tests/screenshots.py",
    ):  # fmt: skip
        assert name in covered, f"{name} shapes the screenshots but is not in ui_source_hash"
    assert not any(name.startswith(("tests/anyon", ".venv")) for name in covered)


def test_the_screenshots_show_no_test_ports():
    """Every picture's visible text is kept in pages.txt; none may show a loopback address with a port (the fake
    GitHub of make screenshots answers as http://localhost on port 80)."""
    from tests.screenshots import TEST_ADDRESS

    pages = (ROOT / "docs" / "screenshots" / "pages.txt").read_text()
    shown = set(re.findall(r"^== (screenshots/)?([\w.-]+\.png) ==$", pages, re.MULTILINE))
    pictures = {path.name for path in (ROOT / "docs" / "screenshots").glob("*.png")}
    assert {name for _, name in shown} == pictures, "pages.txt and the pictures differ: make screenshots"
    assert "http://localhost/ada-lovelace/analytical-engine.git" in pages
    assert not TEST_ADDRESS.findall(pages), f"the screenshots show test addresses: {TEST_ADDRESS.findall(pages)}"
    assert TEST_ADDRESS.search("git clone http://127.0.0.1:36475/a/b.git") and TEST_ADDRESS.search("localhost:8000")


# --- claims of DEPLOYMENT.md and RUNBOOK.md, each pinned to the code that makes it true ----------------------------


def section(doc: str, heading: str) -> str:
    """The text of one ``## heading`` (or ``### heading``) section of a doc, up to the next heading of that level."""
    text = (ROOT / "docs" / doc).read_text()
    level = "#" * len(re.match(r"#+", heading).group())
    start = text.index(heading + "\n")
    following = re.search(rf"^{level} ", text[start + len(heading) :], re.MULTILINE)
    return text[start : start + len(heading) + following.start()] if following else text[start:]


def unwrapped(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_a_docker_outage_fails_runs_at_once_as_the_runbook_says(alice, settings, tmp_path):
    """RUNBOOK, "Docker engine outage": a worker takes the attempt and fails it; no run raises docker_unreachable."""
    from execution.attempts.actions import do_create_task, do_start_attempt
    from execution.attempts.secret_dir import secret_dir_path
    from execution.models import AttemptStatus
    from execution.runner import run_attempt
    from secrets_app.secret_store import do_store_secret
    from shared.models import Alert
    from tests.fakes.github import classic_token

    outage = unwrapped(section("RUNBOOK.md", "## Docker engine outage"))
    assert "stay queued" not in outage
    assert 'a worker takes each one at once and fails it: the attempt page says "Docker engine not reachable: …"' in (
        outage
    )
    settings.ANYON_TEMP_DIR = tmp_path / "anyon-tmp"
    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    do_store_secret(owner=alice, provider="github", kind="pat", value=classic_token(), account_login="alice")
    do_store_secret(owner=alice, provider="claude", kind="api_key", value="sk-ant-api03-" + "k" * 80)
    task = do_create_task(owner=alice, title="t", repo_url="https://github.com/acme/w", base_branch="main", prompt="p")
    with held_from_workers():
        attempt = do_start_attempt(task=task)
    assert run_attempt(attempt.pk) == AttemptStatus.FAILED  # not left in provisioning for the stale sweep
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.FAILED and attempt.error.startswith("Docker engine not reachable: ")
    assert not secret_dir_path(attempt.pk).exists()
    assert not Alert.objects.filter(kind="docker_unreachable").exists()


def test_only_the_sweeps_raise_docker_unreachable():
    row = next(
        line
        for line in (ROOT / "docs" / "RUNBOOK.md").read_text().splitlines()
        if line.startswith("| `docker_unreachable`")
    )
    assert "A cleanup sweep could not reach the Docker engine" in row and "raise no alert of their own" in row
    raisers = [
        str(path.relative_to(ROOT))
        for folder in CODE_DIRS
        for path in (ROOT / folder).rglob("*.py")
        if "AlertKind.DOCKER_UNREACHABLE" in path.read_text()
    ]
    assert raisers == ["execution/sweeps/cleanup.py"]


def test_serve_says_what_happens_to_runs_without_docker():
    from anyon.management.commands.serve import SERVE_WITHOUT_DOCKER

    assert "stay queued" not in SERVE_WITHOUT_DOCKER and "fails it at once" in SERVE_WITHOUT_DOCKER


def test_the_app_serves_static_files_itself_or_the_docs_collect_them(settings):
    """The nginx block must not alias a folder nobody fills: either the app serves /static/ (it does, without
    DEBUG, through ASGIStaticFilesHandler) or every install and upgrade step runs collectstatic."""
    from asgiref.sync import async_to_sync
    from asgiref.testing import ApplicationCommunicator

    from anyon.asgi import application

    assert settings.DEBUG is False
    scope = {
        "type": "http", "http_version": "1.1", "method": "GET", "path": "/static/anyon.css", "raw_path": b"",
        "root_path": "", "scheme": "http", "query_string": b"", "headers": [(b"host", b"127.0.0.1")],
        "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
    }  # fmt: skip

    async def get() -> int:
        communicator = ApplicationCommunicator(application, scope)
        await communicator.send_input({"type": "http.request", "body": b""})
        start = await communicator.receive_output(timeout=10)
        await communicator.wait(timeout=10)
        return start["status"]

    assert async_to_sync(get)() == 200
    deployment = (ROOT / "docs" / "DEPLOYMENT.md").read_text()
    nginx = re.search(r"```nginx\n(.*?)```", deployment, re.DOTALL).group(1)
    single_vm = unwrapped(section("DEPLOYMENT.md", "## Installing on a single VM"))
    assert "The app serves `/static/` itself" in single_vm
    if "location /static/" in nginx:
        assert "collectstatic" in single_vm and "collectstatic" in section("DEPLOYMENT.md", "## Upgrades")


def test_the_single_vm_service_user_never_has_the_container_uid():
    """The containers' uid is nobody's on the host (an account with it could read the agents' /proc); the service user
    gets a system uid of its own, and the worker and the egress proxy the capabilities to hand things over to it."""
    from django.conf import settings

    single_vm = unwrapped(section("DEPLOYMENT.md", "## Installing on a single VM"))
    install = (ROOT / "deploy" / "install.sh").read_text()
    useradd = re.search(r"^ *useradd (.*)$", install, re.MULTILINE).group(1)
    assert "--system" in useradd and "--uid" not in useradd
    assert '"$uid" != "$CONTAINER_UID"' in install  # an existing account with that uid is refused
    assert f"**never {settings.ANYON_CONTAINER_UID}**" in single_vm
    assert "--uid" not in re.search(r"`useradd [^`]*`", single_vm).group()
    units = {m.group(1): m.group(0) for m in re.finditer(r"^unit (\w+) .*$", install, re.MULTILINE)}
    assert set(units) == {"egress", "worker", "web"}
    assert "CAP_CHOWN CAP_DAC_OVERRIDE" in units["egress"] and "CAP_CHOWN" in units["worker"]
    assert "CAP_" not in units["web"]
    assert "User=$NAME" in install  # every process runs as the service user
    readme = unwrapped((ROOT / "README.md").read_text())
    assert "runs as root or with CAP_CHOWN" in readme and "sudo deploy/install.sh" in readme


def test_the_qa_checklist_names_every_health_check():
    from anyon.health import HEALTH_CHECKS

    checklist = (ROOT / "docs" / "QA_CHECKLIST.md").read_text()
    step = re.search(r"^2\. `curl .*?(?=^3\. )", checklist, re.MULTILINE | re.DOTALL).group()
    missing = [name for name in HEALTH_CHECKS if f"`{name}`" not in step]
    assert not missing, f"QA step 2 leaves out health checks: {missing}"


def test_every_worker_host_starts_the_egress_proxy():
    """Sealed runs (the default) need this host's egress proxy; systemd starts it beside the worker."""
    from django.conf import settings

    assert settings.ANYON_CREDENTIAL_MODE in ("sealed", "mounted")
    install = (ROOT / "deploy" / "install.sh").read_text()
    assert re.search(r'^unit egress .*"\$PYTHON manage.py egress_proxy"', install, re.MULTILINE)
    assert re.search(r'^unit worker .*"\$PYTHON manage.py qcluster" .*"\$NAME-egress.service"', install, re.MULTILINE)
    assert (
        'UNITS=("$NAME-egress.service" "$NAME-worker.service" "$NAME-web.service")'
        in (ROOT / "deploy" / "lib.sh").read_text()
    )  # all three enabled and started, the proxy first
    single_vm = section("DEPLOYMENT.md", "## Installing on a single VM")
    assert "ExecStart=/srv/anyon/app/.venv/bin/python manage.py egress_proxy" in single_vm
    assert "systemctl enable --now anyon-egress anyon-worker anyon-web" in single_vm
    scale_out = unwrapped(section("DEPLOYMENT.md", "## Scale-out"))
    assert "**Worker hosts** (one queue each): `anyon-worker` and `anyon-egress`" in scale_out
    assert "every worker host runs its own egress proxy, `manage.py egress_proxy`" in scale_out


def test_web_hosts_need_docker_as_the_scale_out_section_says():
    from django.conf import settings

    from anyon import context_processors
    from anyon.health import HEALTH_CHECKS, check_docker, check_egress_proxy, check_runtime_image

    scale_out = unwrapped(section("DEPLOYMENT.md", "## Scale-out"))
    assert "**Web hosts**: `anyon-web`. They need Docker too" in scale_out
    assert context_processors.check_docker is check_docker  # the banner on every page asks the engine
    assert HEALTH_CHECKS["docker"] is check_docker and HEALTH_CHECKS["runtime_image"] is check_runtime_image
    assert "the banner on every page and `/healthz` ask the engine (and `/healthz` the runtime image)" in scale_out
    assert HEALTH_CHECKS["egress_proxy"] is check_egress_proxy
    assert "In sealed mode `/healthz` also asks this host's egress proxy" in scale_out
    assert settings.ANYON_CLAUDE_LOGIN_COMMAND.startswith("docker run ")
    assert "{image}" in settings.ANYON_CLAUDE_LOGIN_COMMAND and "setup-token" in settings.ANYON_CLAUDE_LOGIN_COMMAND
    assert "runs `docker run … claude setup-token` of the runtime image through the `docker` CLI" in scale_out


@pytest.mark.django_db
def test_doctor_checks_what_the_requirements_table_names(settings, tmp_path):
    from anyon.health import DOCTOR_CHECKS, PYTHON_SUPPORTED, run_checks

    settings.DOCKER_HOST = "unix:///nonexistent/docker.sock"
    settings.ANYON_TEMP_DIR = tmp_path
    names = {check.name for check in run_checks(DOCTOR_CHECKS)}
    requirements = section("DEPLOYMENT.md", "## Requirements")
    rows = [line for line in requirements.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) >= 6
    named = [name for row in rows for name in re.findall(r"`([a-z][a-z -]+)`", row.rsplit("|", 2)[-2])]
    assert {"python", "docker engine", "docker version", "disk", "temp dir", "runtime image"} <= set(named)
    assert set(named) <= names, f"the requirements table names checks doctor does not have: {set(named) - names}"
    assert "`python manage.py doctor` checks every row that names a `doctor` line" in unwrapped(requirements)
    doctor_row = next(
        line for line in (ROOT / "docs" / "RUNBOOK.md").read_text().splitlines() if "`manage.py doctor`" in line
    )
    missing = [name for name in names if name not in doctor_row.lower()]
    assert not missing, f"the RUNBOOK's doctor row leaves out: {missing}"
    # The Python versions doctor accepts are pyproject's, and the docs say the same.
    pyproject = (ROOT / "pyproject.toml").read_text()
    low, high = re.search(r'requires-python = ">=(\d+\.\d+),<(\d+\.\d+)"', pyproject).groups()
    assert PYTHON_SUPPORTED[0] == tuple(int(p) for p in low.split("."))
    assert (PYTHON_SUPPORTED[1][0], PYTHON_SUPPORTED[1][1] + 1) == tuple(int(p) for p in high.split("."))
    supported = f"Python {low} to {PYTHON_SUPPORTED[1][0]}.{PYTHON_SUPPORTED[1][1]}"
    assert supported in requirements and supported in section("DEPLOYMENT.md", "## Installing on a single VM")


def test_the_runbook_says_how_claude_and_github_tokens_expire():
    from execution.runner import credential_expiry
    from secrets_app.anthropic_credentials import TOKEN_LIFETIME
    from secrets_app.migrations import __path__ as migrations
    from secrets_app.selectors import EXPIRY_WARNING

    expiry = unwrapped(section("RUNBOOK.md", "## Token expiry"))
    schedule = re.search(r'NAME = "([^"]+)"', (Path(migrations[0]) / "0002_token_expiry_schedule.py").read_text())
    assert f"schedule *{schedule.group(1)}*" in expiry and "`manage.py check_tokens`" in expiry
    assert f"From {EXPIRY_WARNING.days} days before an expiry date" in expiry
    assert "**Claude**" in expiry and "**GitHub**" in expiry
    assert f"recorded as valid for {TOKEN_LIFETIME.days} days" in expiry
    assert (
        "Claude rejected the credential" in expiry
        and "Claude rejected the credential" in Path(credential_expiry.__file__).read_text()
    )
    assert "`token_expiring`" in expiry and "`token_expired`" in expiry


def test_the_qa_checklist_counts_the_attack_tests_and_none_went_missing():
    import subprocess
    import sys

    recorded = int(re.search(r"\*\*(\d+)\*\* at this release", (ROOT / "docs" / "QA_CHECKLIST.md").read_text())[1])
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "hostile", "-p", "no:randomly"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    collected = int(re.search(r"^(\d+)/\d+ tests collected", done.stdout, re.MULTILINE)[1])
    assert collected >= recorded, f"{recorded} attack tests are recorded, {collected} are collected"


def test_the_architecture_page_names_every_import_contract_and_every_part_of_execution():
    import tomllib

    page = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    missing = [c["name"] for c in contracts if c["name"].split(":")[0] not in page]
    assert not missing, f"docs/ARCHITECTURE.md, Contracts: name {missing}"
    parts = [p.name for p in (ROOT / "execution").iterdir() if (p / "__init__.py").exists()]
    assert {"web", "runner", "attempts", "hosts"} <= set(parts)
    unnamed = [name for name in parts if f"`execution/{name}/`" not in page]
    assert not unnamed, f"docs/ARCHITECTURE.md, Where does X belong: name {unnamed}"
