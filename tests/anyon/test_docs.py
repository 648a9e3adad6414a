"""Documentation that can rot is checked against the code."""

import re
from pathlib import Path

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
    assert recorded == ui_source_hash(), "templates or static files changed since the screenshots: make screenshots"
